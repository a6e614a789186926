"""Files that ship with rnnkit: the settings of `make demo`."""
