"""Target drivers: one class per kind behind one interface, found through the registry."""
