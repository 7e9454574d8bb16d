/* placeholder */ typedef int placeholder_backend_t;
