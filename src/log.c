/* placeholder */ typedef int placeholder_log_t;
