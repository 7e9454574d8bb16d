/* placeholder */ typedef int placeholder_cache_t;
