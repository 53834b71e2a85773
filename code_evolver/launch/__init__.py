"""Starting child processes: the one launcher every tool uses, the runtime channel a child's
``node_runtime`` calls come back on, and running a process so that nothing outlives it."""
