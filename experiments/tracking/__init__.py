"""MLflow logging of convbench runs (the contract is in contract.py)."""
