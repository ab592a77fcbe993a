"""How convbench measures, below every other package: the timing protocol (timing.py: warm-up, samples
until a time budget, clocks, cold-cache flushes, the statistics of a target and its noise rule) and the
bootstrap intervals of a ratio of medians (bootstrap.py). Nothing here imports the rest of the project.
"""
