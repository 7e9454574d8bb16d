/* placeholder */ typedef int placeholder_sweeper_t;
