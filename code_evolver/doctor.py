"""``evolve doctor``: which backend would be used, where the model is, and what is missing.

Every check says what it found and, when it failed, the command that fixes it. The model of
the backend that would be used is loaded once (a damaged file must not pass as "ready"); other
backends are only looked up.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import time
from dataclasses import dataclass, field, replace
from importlib import metadata

from code_evolver.config import Config
from code_evolver.errors import BackendError, ConfigError
from code_evolver.home import evolve_home, file_in_the_way
from code_evolver.launch import bubblewrap, cgroups
from code_evolver.llm.embedded import INSTALL_HINT, resolve_model_path, xllamacpp_available
from code_evolver.llm.service import Choice, choose_backend
from code_evolver.llm.settings import OLLAMA_HOST_ENV, EndpointSettings


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str
    fix: str = ""
    needed: bool = True
    """False for the checks of a backend that is not the one used: not a failure."""


BACKEND_CHECKS = {
    "embedded": ("xllamacpp", "embedded model"),
    "ollama": ("ollama server", "ollama model"),
    "openai": ("openai server",),
}


@dataclass
class Report:
    choice: Choice
    checks: list[Check] = field(default_factory=list)

    @property
    def usable(self) -> bool:
        """Whether the backend that would be used has everything it needs (a pool: one
        endpoint that answers with the model)."""
        if self.choice.backend == "pool":
            return any(c.ok for c in self.checks if c.name.startswith("endpoint "))
        needed = BACKEND_CHECKS[self.choice.backend]
        return all(c.ok for c in self.checks if c.name in needed)

    def to_json(self) -> dict[str, object]:
        return {
            "backend": self.choice.backend,
            "reasons": self.choice.reasons,
            "usable": self.usable,
            "checks": [c.__dict__ for c in self.checks],
        }


async def diagnose(config: Config) -> Report:
    llm = config.llm
    choice = await choose_backend(llm)
    files = " + ".join(str(path) for path in config.sources)
    checks = [Check("config", True, files or "built-in defaults")]
    if llm.pooled:
        checks += await _endpoint_checks(config)
    checks += await _embedded_checks(config, load=choice.backend == "embedded")
    checks += await _ollama_checks(config)
    if llm.backend == "openai":
        checks.append(await _openai_check(config))
    checks.append(_home_check())
    checks += await asyncio.to_thread(_isolation_checks, config)
    unused = {
        name
        for backend, names in BACKEND_CHECKS.items()
        if backend != choice.backend
        for name in names
    }
    checks = [replace(c, needed=False) if c.name in unused else c for c in checks]
    return Report(choice, checks)


async def _endpoint_checks(config: Config) -> list[Check]:
    """Each endpoint of ``llm.endpoints``, probed at once: reachable, with its model, its
    capacity and how long it took to answer."""
    from code_evolver.errors import ModelMissing
    from code_evolver.llm.pool import PROBE_TIMEOUT_S
    from code_evolver.llm.service import create_backend

    async def probe(endpoint: EndpointSettings) -> Check:
        name = f"endpoint {endpoint.name}"
        try:
            backend = create_backend(endpoint.backend, config.llm.for_endpoint(endpoint))
        except (BackendError, ConfigError) as exc:
            return Check(name, False, str(exc), "fix llm.endpoints in config.yaml")
        started = time.perf_counter()
        try:
            async with asyncio.timeout(PROBE_TIMEOUT_S):
                await backend.check()
        except TimeoutError:
            return Check(name, False, f"{backend.describe()}: no answer in {PROBE_TIMEOUT_S:g}s")
        except ModelMissing as exc:
            return Check(name, False, str(exc), f"ollama pull {backend.model}")
        except BackendError as exc:
            return Check(name, False, str(exc), "start the server, or remove the endpoint")
        finally:
            await backend.close()
        took = (time.perf_counter() - started) * 1000
        detail = f"{backend.describe()} · capacity {endpoint.max_concurrency} · {took:.0f} ms"
        return Check(name, True, detail)

    return list(await asyncio.gather(*(probe(e) for e in config.llm.chosen_endpoints())))


def _isolation_checks(config: Config) -> list[Check]:
    """Which isolation levels work here, and why not (they never decide ``usable``)."""
    execution = config.execution
    available = bubblewrap.probe(execution.bubblewrap)
    if available.ok:
        checks = [
            Check("sandbox strict", True, f"{available.detail}: namespaces, no network"),
            Check("sandbox contain", True, "own pid namespace: dies with its step and evolve"),
        ]
    else:
        checks = [
            Check("sandbox strict", False, f"refused: {available.detail}", available.fix),
            Check(
                "sandbox contain",
                False,
                "fallback: leftovers killed when a step ends, not when evolve is killed",
                available.fix,
            ),
        ]
    if os.geteuid() == 0:
        where = cgroups.pids_root()
        checks.append(
            Check(
                "process limits",
                True,
                f"strict tools: pids cgroups in {where}; others run by root have none "
                "(the kernel exempts root)",
            )
            if where
            else Check(
                "process limits",
                False,
                "not enforced for root (the kernel exempts root; no pids cgroup can be made)",
                "run evolve as a normal user, or give it a pids cgroup",
            )
        )
    return checks


def _home_check() -> Check:
    """Whether state (the plan cache) can be kept; runs work either way."""
    fix = "set EVOLVE_HOME to a writable folder"
    try:
        home = evolve_home()
        home.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=home):
            pass
    except (OSError, RuntimeError) as exc:
        detail = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        if isinstance(exc, FileExistsError | NotADirectoryError):
            detail = f"{file_in_the_way(home) or home} is a file, not a folder"
        return Check("EVOLVE_HOME", False, f"not writable ({detail}); runs work without state", fix)
    return Check("EVOLVE_HOME", True, str(home))


async def _embedded_checks(config: Config, *, load: bool) -> list[Check]:
    if xllamacpp_available():
        xl = Check("xllamacpp", True, f"version {_version('xllamacpp')}")
    else:
        xl = Check("xllamacpp", False, "not installed", "pip install xllamacpp")
    settings = config.llm.embedded
    fix = INSTALL_HINT if not settings.model_path else "fix llm.embedded.model_path"
    if config.llm.model and (config.llm.backend == "embedded" or load):
        # the model the embedded backend would load: --model (llm.model) wins, as in a run
        settings = settings.model_copy(update={"model_path": config.llm.model})
        fix = "give --model (llm.model) a GGUF model file"
    try:
        path = resolve_model_path(settings)
    except BackendError as exc:
        return [xl, Check("embedded model", False, str(exc), fix)]
    size_mb = path.stat().st_size / 2**20
    found = f"{path} ({size_mb:.0f} MB)"
    if not (load and xl.ok):
        return [xl, Check("embedded model", True, found)]
    from code_evolver.llm.embedded import EmbeddedBackend

    backend = EmbeddedBackend(settings)
    started = time.perf_counter()
    try:
        await backend.check()
    except BackendError as exc:
        return [xl, Check("embedded model", False, str(exc), fix)]
    finally:
        await backend.close()
    took = time.perf_counter() - started
    slots = f"{settings.n_parallel} requests at once, {settings.context_tokens:,} tokens each"
    return [xl, Check("embedded model", True, f"{found}, loads in {took:.1f}s; {slots}")]


async def _ollama_checks(config: Config) -> list[Check]:
    from code_evolver.llm.ollama import OllamaBackend, model_matches

    try:
        backend = OllamaBackend(config.llm.ollama, config.llm.model)
    except ConfigError as exc:
        return [Check("ollama server", False, str(exc), f"fix or unset ${OLLAMA_HOST_ENV}")]
    try:
        installed = await asyncio.wait_for(backend.installed_models(), config.llm.probe_timeout_s)
    except (BackendError, TimeoutError) as exc:
        return [Check("ollama server", False, str(exc) or "no answer", "ollama serve")]
    finally:
        await backend.close()
    server = Check("ollama server", True, f"{backend.host}: {len(installed)} models")
    if model_matches(backend.model, installed):
        return [server, Check("ollama model", True, backend.model)]
    return [
        server,
        Check(
            "ollama model", False, f"{backend.model} is not pulled", f"ollama pull {backend.model}"
        ),
    ]


async def _openai_check(config: Config) -> Check:
    from code_evolver.llm.openai_compat import OpenAIBackend

    backend = OpenAIBackend(config.llm.openai, config.llm.model)
    try:
        models = await asyncio.wait_for(backend.models(), config.llm.probe_timeout_s * 5)
    except (BackendError, TimeoutError) as exc:
        return Check("openai server", False, str(exc) or "no answer", "start the server")
    finally:
        await backend.close()
    return Check("openai server", True, f"{backend.base_url}: {', '.join(models) or 'no models'}")


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "unknown"
