//! Readiness and liveness probes run from outside a service: TCP connect and HTTP GET.
