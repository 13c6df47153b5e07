"""Local tools: the stack of real services the project starts itself, the namespace fleet, the demo."""
