"""Running the notebook in a kernel: its cells, then the grader's requests into the same kernel.

- `execute`: `execute`, the entry point: a fresh session that has run the notebook's cells.
- `session`: `Session`, a live kernel: starts it with the prelude, runs the cells (restarting
  without a cell that kills it), runs grader code, revives a kernel that grader code stopped.
- `client`: nbclient with every kernel message bounded in size, and waiting for a started kernel.
- `record`: `ExecutionRecord` and `CellRun`, what happened to each cell; names of unfinished cells.
- `tolerant`: a cell's import of a module the kernel lacks, made non-fatal.
- `budget`: `Budget`, the submission's time limit, shared by everything that runs its code.
- `runner`: the probe runner, kernel-side (installed before any student cell): finding and
  calling the notebook's functions, requests, install; its parts `runner_values` (inputs
  decoded, answers encoded) and `runner_numerical` (the numerical-gradient detector).
- `probe`: the grader side of probes: the prelude, requests with their nonces, answers decoded
  and accepted only as the runner's own.
- `imports`: forbidden imports, in the cell sources and in the kernel.

Importing the package loads none of these: the stage is imported module by module.
"""
