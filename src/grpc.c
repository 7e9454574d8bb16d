/* placeholder */ typedef int placeholder_grpc_t;
