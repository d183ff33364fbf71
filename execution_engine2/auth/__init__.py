"""Token -> caller (KBase auth or local tokens) and workspace permissions."""
