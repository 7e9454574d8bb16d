/* placeholder */ typedef int placeholder_auth_t;
