"""How every benchmark says whether it met a target: PASS or FAIL, printed beside the figures
measured side by side in one run. A target never changes the exit code: these machines are
shared and noisy, so a verdict is for reading, not for failing a build."""


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"
