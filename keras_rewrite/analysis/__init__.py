"""Reading a model without changing it: `diff` (what changed, layer by layer), `lint` (what to fix,
and the passes that fix it), `picture` (the graph or a diff drawn as SVG, HTML or DOT)."""
