#!/usr/bin/env python3
"""Check the Dockerfile without a container engine: replay its build stage, run the binary.

  python3 .ci/image.py check [--build-arg NAME=VALUE]... [--cache PATH=HOSTDIR]...

No daemon or registry exists on the build machines, so this does what BuildKit would do with
the build stage the final stage copies from: the build context (minus .dockerignore) is
copied into a temporary directory standing for the stage's filesystem, WORKDIR, ARG and ENV
are followed, and each RUN runs there (on this machine's toolchain, not the image's). A cache
mount is an empty directory unless `--cache` maps it to one of this machine's (CI maps
target/ to the one its tests built, so only what differs is rebuilt). Then the file the
final stage copies must exist and answer `--version` with Cargo.toml's version.

Also checked: the build stage's `rust:X.Y` image is at least Cargo.toml's `rust-version`.
Instructions the replay does not know fail the check, so a Dockerfile edit cannot slip by.
"""
import argparse
import fnmatch
import os
import pathlib
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import tomllib

ROOT = pathlib.Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "Dockerfile"
BINARY = "expensify-operator"


class ReplayError(Exception):
    pass


def instructions(text):
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    logical, current = [], ""
    for line in text.splitlines():
        stripped = line.strip()
        if not current and (not stripped or stripped.startswith("#")):
            continue
        if stripped.startswith("#"):
            continue  # a comment inside a continued instruction
        if stripped.endswith("\\"):
            current += stripped[:-1] + " "
            continue
        logical.append(current + stripped)
        current = ""
    if current:
        logical.append(current)
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line else "") for line in logical]


def stages(text):
    """[(name or index, base image, [instructions])], in order."""
    found = []
    for instruction, arguments in instructions(text):
        if instruction == "FROM":
            words = [w for w in arguments.split() if not w.startswith("--platform")]
            name = words[2] if len(words) == 3 and words[1].lower() == "as" else str(len(found))
            found.append((name, words[0], []))
        elif found:
            found[-1][2].append((instruction, arguments))
    if not found:
        raise ReplayError("the Dockerfile has no FROM")
    return found


def copied_from(final):
    """The (stage, path) pairs the final stage copies out of other stages."""
    pairs = []
    for instruction, arguments in final:
        if instruction == "COPY":
            words = shlex.split(arguments)
            source = [w.split("=", 1)[1] for w in words if w.startswith("--from=")]
            if source:
                paths = [w for w in words if not w.startswith("--")]
                pairs.extend((source[0], path) for path in paths[:-1])
    return pairs


def rust_version_check(base):
    """The rust:X.Y image is at least Cargo.toml's rust-version."""
    manifest = tomllib.loads((ROOT / "Cargo.toml").read_text())
    wanted = manifest["package"]["rust-version"]
    match = re.fullmatch(r"(?:docker\.io/(?:library/)?)?rust:(\d+)\.(\d+)(?:\.(\d+))?(?:-.*)?", base)
    if not match:
        raise ReplayError(f"build stage image {base!r} is not rust:X.Y[...]; its Rust version cannot be checked")
    image = tuple(int(part or 0) for part in match.groups())
    needed = tuple(int(part) for part in (wanted.split(".") + ["0", "0"])[:3])
    if image < needed:
        raise ReplayError(f"build stage image {base} is older than rust-version {wanted} in Cargo.toml")
    print(f"ok: {base} >= rust-version {wanted}")
    return manifest["package"]["version"]


def ignore_patterns():
    path = ROOT / ".dockerignore"
    if not path.exists():
        return []
    lines = [line.strip() for line in path.read_text().splitlines()]
    return [line.rstrip("/") for line in lines if line and not line.startswith("#")]


def ignored(relative, patterns):
    """Whether the context path `relative` is left out (a directory takes its contents)."""
    parts = relative.split("/")
    for pattern in patterns:
        if pattern.startswith("!"):
            raise ReplayError(f".dockerignore exception {pattern!r} is not supported by the replay")
        pattern = pattern.lstrip("/")
        if pattern.startswith("**/"):
            tails = ["/".join(parts[i:]) for i in range(len(parts))]
            if any(fnmatch.fnmatchcase(tail, pattern[3:]) for tail in tails):
                return True
        elif fnmatch.fnmatchcase(relative, pattern):
            return True
    return False


def copy_context(sources, destination, patterns):
    """COPY SRC... DEST from the build context, as BuildKit does for directories and files."""
    destination.mkdir(parents=True, exist_ok=True)
    for source in sources:
        origin = (ROOT / source).resolve()
        if ROOT != origin and ROOT not in origin.parents:
            raise ReplayError(f"COPY {source}: outside the build context")
        if origin.is_file():
            shutil.copy2(origin, destination / origin.name)
            continue

        def skip(directory, names):
            rel = pathlib.Path(directory).resolve().relative_to(ROOT).as_posix()
            rel = "" if rel == "." else rel + "/"
            return {n for n in names if ignored(rel + n, patterns)}

        # COPY of a directory copies its contents into DEST.
        shutil.copytree(origin, destination, ignore=skip, dirs_exist_ok=True, symlinks=True)


def run_instruction(arguments, cwd, rootfs, env, caches):
    # RUN's own flags come first, each one word; the shell command is the rest.
    flags = re.match(r"(?:--\S+\s+)*", arguments).group(0)
    command = arguments[len(flags):].strip()
    mounts = []
    for flag in flags.split():
        if not flag.startswith("--mount="):
            raise ReplayError(f"RUN flag {flag} is not supported by the replay")
        options = dict(part.split("=", 1) for part in flag[len("--mount="):].split(","))
        if options.get("type") != "cache":
            raise ReplayError(f"RUN mount {flag} is not a cache mount; the replay knows no other")
        mounts.append(options["target"])
    for target in mounts:
        inside = rootfs / target.lstrip("/")
        inside.parent.mkdir(parents=True, exist_ok=True)
        host = caches.get(target)
        if host is None:
            host = rootfs.parent / "cache" / target.strip("/").replace("/", "_")
        pathlib.Path(host).mkdir(parents=True, exist_ok=True)
        if inside.is_symlink() or inside.exists():
            raise ReplayError(f"cache mount {target} hides files of the build context")
        inside.symlink_to(pathlib.Path(host).resolve(), target_is_directory=True)
    # Shell form: the image's /bin/sh -c runs it; here the machine's sh with the stage's env.
    print(f"+ (in {cwd.relative_to(rootfs.parent)}) {command}", flush=True)
    result = subprocess.run(["sh", "-c", command], cwd=cwd, env=env)
    if result.returncode != 0:
        raise ReplayError(f"RUN {command!r} exited {result.returncode}")
    for target in mounts:
        (rootfs / target.lstrip("/")).unlink()  # a cache mount leaves nothing in the layer


def replay(build, rootfs, build_args, caches):
    env = {k: v for k, v in os.environ.items() if k not in {"CARGO_TARGET_DIR", "CARGO_BUILD_TARGET_DIR"}}
    cwd = rootfs
    patterns = ignore_patterns()
    for instruction, arguments in build:
        if instruction == "ARG":
            name, _, default = arguments.partition("=")
            env[name] = build_args.get(name, default)
        elif instruction == "ENV":
            name, _, value = arguments.partition("=")
            env[name.strip()] = value.strip().strip('"')
        elif instruction == "WORKDIR":
            cwd = rootfs / arguments.strip().lstrip("/")
            cwd.mkdir(parents=True, exist_ok=True)
        elif instruction == "COPY":
            words = shlex.split(arguments)
            if any(w.startswith("--") for w in words):
                raise ReplayError(f"COPY {arguments}: flags are not supported by the replay")
            *sources, destination = words
            target = rootfs / destination.lstrip("/") if destination.startswith("/") else cwd / destination
            copy_context(sources, target, patterns)
        elif instruction == "RUN":
            run_instruction(arguments, cwd, rootfs, env, caches)
        elif instruction not in {"LABEL"}:
            raise ReplayError(f"{instruction} in the build stage is not supported by the replay")


def check(build_args, caches):
    all_stages = stages(DOCKERFILE.read_text())
    final = all_stages[-1][2]
    pairs = copied_from(final)
    if not pairs:
        raise ReplayError("the final stage copies nothing from a build stage")
    by_name = {name: (base, body) for name, base, body in all_stages}
    version = None
    with tempfile.TemporaryDirectory(prefix="image-replay-") as temporary:
        rootfs = pathlib.Path(temporary) / "rootfs"
        for stage in sorted({stage for stage, _ in pairs}):
            if stage not in by_name:
                raise ReplayError(f"COPY --from={stage}: no such stage")
            base, body = by_name[stage]
            version = rust_version_check(base)
            replay(body, rootfs, build_args, caches)
        for _, path in pairs:
            copied = rootfs / path.lstrip("/")
            if not copied.is_file() or not os.access(copied, os.X_OK):
                raise ReplayError(f"the final stage copies {path}, which the build stage did not make")
            if copied.name == BINARY:
                answer = subprocess.run([str(copied), "--version"], capture_output=True, text=True, timeout=60)
                said = answer.stdout.strip()
                if answer.returncode != 0 or version not in said:
                    raise ReplayError(f"{path} --version exited {answer.returncode} saying {said!r}, not version {version}")
                print(f"ok: {path} --version: {said}")
    return 0


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["check"])
    parser.add_argument("--build-arg", action="append", default=[], metavar="NAME=VALUE")
    parser.add_argument("--cache", action="append", default=[], metavar="PATH=HOSTDIR",
                        help="use HOSTDIR for the cache mount at PATH")
    options = parser.parse_args()
    build_args = dict(pair.split("=", 1) for pair in options.build_arg)
    caches = dict(pair.split("=", 1) for pair in options.cache)
    try:
        return check(build_args, caches)
    except ReplayError as error:
        print(f"FAIL {error}")
        return 1


if __name__ == "__main__":
    sys.exit(main())
