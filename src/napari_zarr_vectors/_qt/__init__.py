"""Everything of the plugin that imports Qt: the dock widgets and the bindings of layers to models.

The models they bind to are pure and evented (psygnal, as napari's own):
``pyramid.BuildOptions`` (the Build dock), ``lod.ViewState`` (a layer's
level, lock and budget; the Levels dock) and ``drill.Breadcrumb`` (the
Drill dock).  Modules outside this package import no Qt.

- ``workers``: the one way work runs off the GUI thread (``start_worker``).
- ``binding``: ``LayerBinding``, a layer held weakly with its event connections.
- ``follow``: layers that follow the camera (``LayerFollower``) and density images
  counted when first shown (``DensityCompanion``).
- ``build_widget``, ``levels_widget``, ``drill_widget``, ``open_url``: the dock widgets.
"""
