"""Tools that use every part: the `webhouse` command, the demo, the traffic simulator, loaders."""
