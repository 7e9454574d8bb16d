/* placeholder */ typedef int placeholder_config_t;
