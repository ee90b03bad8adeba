"""Static checks of the Dockerfile, the compose stack and the Kubernetes manifests."""
