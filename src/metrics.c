/* placeholder */ typedef int placeholder_metrics_t;
