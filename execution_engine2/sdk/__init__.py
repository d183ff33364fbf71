"""The method runner: what each RPC does, one module per family of methods."""
