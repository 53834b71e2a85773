"""The stable API for generated node scripts: ``call_tool`` and ``call_tools_parallel``.

Placeholder package: the API arrives with the node_runtime issue. It is importable now so that
packaging, imports and the layout are settled before generated scripts depend on it.
"""

__all__: list[str] = []
