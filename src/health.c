/* placeholder */ typedef int placeholder_health_t;
