"""The control plane: the controller application, its reconcile loop and the traffic snapshot it publishes."""
