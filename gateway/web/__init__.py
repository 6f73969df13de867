"""The web layer: the application factory, the request pipeline's state, running it, and its logs."""
