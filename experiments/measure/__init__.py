"""How convbench measures, below every other package: the timing protocol (timing.py: warm-up, samples
until a time budget, clocks, cold-cache flushes, the statistics of a target and its noise rule) and the
bootstrap intervals of a ratio of medians (bootstrap.py), the energy meter (energy.py: CodeCarbon's
offline tracker around a window, and when a window is too thin to read per image). Nothing here imports the rest of the project.
"""
