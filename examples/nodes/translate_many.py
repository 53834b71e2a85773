"""A node that translates its input into several languages at once.

Each translation is a separate `translator` call; `call_tools_parallel` sends them together, so
they run in parallel within the workflow's limits (or in-process when run on its own:
`echo '{"input": "Good morning", "params": {"languages": "French, German"}}' | python
translate_many.py`).
"""

from __future__ import annotations

from node_runtime import call_tools_parallel, run_node


def main(text: str, languages: str | list[str] = "French, Spanish") -> dict[str, str]:
    if isinstance(languages, str):
        languages = [name.strip() for name in languages.split(",") if name.strip()]
    translations = call_tools_parallel(
        [("translator", text, {"target_lang": language}) for language in languages]
    )
    return dict(zip(languages, translations, strict=True))


if __name__ == "__main__":
    run_node(main)
