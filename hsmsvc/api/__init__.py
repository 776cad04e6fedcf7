"""The gRPC API: servicers, server, status mapping. The only layer that imports grpc."""
