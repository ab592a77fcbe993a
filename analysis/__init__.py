"""MLflow runs -> pandas -> tables, figures and the project report (`make report`).

Modules, in the order data flows through them:
    store     open the tracking store, fetch runs and layers.csv artifacts
    load      runs -> one tidy row per job; layers.csv files -> one row per layer
    selection group by device/backend, keep the latest run per configuration, pick best tiles
    tables    the report's tables (pandas DataFrames)
    figures   the report's figures (PNG, matplotlib Agg)
    ceilings  roofline ceilings: measured (`python -m analysis.ceilings`) or configured
    findings  measured statements for the discussion
    document  section/table/figure blocks; render writes them as Markdown, HTML, CSV, LaTeX
    sections  composes the blocks of every section from the runs
    report    the command line: `python -m analysis.report`
"""
