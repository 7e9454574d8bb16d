/* placeholder */ typedef int placeholder_methods_t;
