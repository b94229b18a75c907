"""gRPC servicers: parse and validate requests, call the domain, map outcomes to responses."""
