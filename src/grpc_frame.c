/* placeholder */ typedef int placeholder_grpc_frame_t;
