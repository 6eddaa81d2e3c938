"""One router per area of the API. A router imports the shared modules of `gateway.http` and the layers below,
never another router (an import contract says so); the composition root mounts them all."""
