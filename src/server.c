/* placeholder */ typedef int placeholder_server_t;
