/* placeholder */ typedef int placeholder_memory_t;
