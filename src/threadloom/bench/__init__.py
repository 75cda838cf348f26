"""``threadloom bench``: the tutorial's comparison table, measured on the user's own machine.

Modules, in the order a run uses them:

* ``plan``: what is measured (models x workloads x connections) and how long.
* ``workloads``: the apps, each in a sync and an async form so every model runs the same logic.
* ``machine``: CPU split between server and load, pinning, what the report says about the box.
* ``servers``: one model as its own ``threadloom serve`` process: start, probe, watch, stop.
* ``generators``, ``loadgen``, ``clients``, ``wsframes``, ``wrk_report.lua``, ``responder``:
  load (wrk or the built-in client), and the do-nothing responder that measures the
  generator's own ceiling.
* ``runner``: warm-up, rounds, medians, and the status of every cell.
* ``verdict``, ``report``, ``charts``, ``progress``, ``session``: what the user sees.
* ``command``: the ``threadloom bench`` arguments; nothing heavy is imported until it runs.
"""
