"""A regression run: up → installed → referenced → deleted → drained → down."""
