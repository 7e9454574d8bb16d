/* placeholder */ typedef int placeholder_conn_t;
