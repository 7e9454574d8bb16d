/* placeholder */ typedef int placeholder_config_table_t;
