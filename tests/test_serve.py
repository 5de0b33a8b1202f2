"""`tessera serve`: requests checked as the command line checks them, results the command line repeats
byte for byte, uploads refused unless they are what they say, and the page itself driven in Chromium.

The browser tests need the `ui` extra, Playwright (its bundled driver) and a Chromium from the system
(`apt-get install chromium`); without them they skip, saying which is missing.
"""

from __future__ import annotations

import inspect
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch

import tessera
from tessera import cli, pipeline, serve
from tessera.options import DEFAULTS, SAMPLING
from tessera.video import read_video, write_video

pytestmark = pytest.mark.usefixtures("one_thread")
ROOT = Path(tessera.__file__).resolve().parents[1]
COMMANDS = ("generate", "image", "animate", "extend", "connect", "loop", "edit", "long")
CHROMIUM_FLAGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--no-first-run",
]  # fmt: skip


def _values(model: str, **over) -> dict:
    """A tab's fields as the page sends them: the defaults, small enough for the tiny model."""
    v = dict(
        model=model, prompt="a red ball bouncing", frames=5, width=32, height=32, steps=2, guidance=5.0,
        seed=0, sampler="euler", guidance_interval="", fps=16.0, expand=True, negative_prompt="",
    )  # fmt: skip
    return {**v, **over}


def _clip(path: Path, frames: int = 9, size: int = 32, seed: int = 0) -> Path:
    gen = torch.Generator().manual_seed(seed)
    return write_video(path, torch.randint(0, 256, (frames, size, size, 3), generator=gen, dtype=torch.uint8))


# ---- one place for the defaults -----------------------------------------------------------------------


def test_cli_pipeline_and_page_share_the_defaults():
    for name in COMMANDS:
        params = inspect.signature(getattr(cli, name)).parameters
        for key in ("steps", "guidance", "seed", "sampler", "guidance_interval", "fps"):
            if key in params:
                assert params[key].default == getattr(DEFAULTS, key), (name, key)
        frames = DEFAULTS.long_frames if name == "long" else DEFAULTS.frames
        assert params.get("frames", inspect.Parameter("frames", 1, default=frames)).default == frames
        given = name in ("animate", "extend", "connect", "edit")  # the given frames' size by default
        assert params["size"].default == (None if given else f"{DEFAULTS.width}x{DEFAULTS.height}")
        for f in SAMPLING:  # every sampling option, with its default and help from tessera.options
            assert params[f.name].default == f.default, (name, f.name)
            assert params[f.name].annotation.__metadata__[0].help == f.metadata["help"]
    sample = inspect.signature(pipeline.sample_latents).parameters
    assert [sample[k].default for k in ("steps", "guidance", "seed", "sampler")] == [25, 5.0, 0, "euler"]
    assert (DEFAULTS.steps, DEFAULTS.guidance, DEFAULTS.seed, DEFAULTS.sampler) == (25, 5.0, 0, "euler")
    r = serve.Request("generate", "x", None)
    assert (r.frames, r.steps, r.guidance, r.seed, r.fps) == (33, 25, 5.0, 0, 16.0)


# ---- requests: the command line's checks and messages, and a command line that repeats them ----------


@pytest.mark.parametrize(
    "over, flags",
    [
        ({"frames": 10}, ["--frames", "10"]),
        ({"height": 30}, ["--height", "30"]),
        ({"width": 4096}, ["--width", "4096"]),
        ({"sampler": "rk9"}, ["--sampler", "rk9"]),
        ({"guidance_interval": "0.9,0.1"}, ["--guidance-interval", "0.9,0.1"]),
        ({"steps": 0}, ["--steps", "0"]),
    ],
)
def test_a_bad_request_gets_the_command_lines_message_before_any_work(tiny_model_dir, tmp_path, over, flags):
    from typer.testing import CliRunner

    models = {str(tiny_model_dir): tiny_model_dir}
    with pytest.raises(ValueError) as refused:
        serve.parse_request("generate", _values(str(tiny_model_dir), **over), models, tmp_path)
    argv = ["generate", "x", "--model", str(tiny_model_dir), "-o", str(tmp_path / "o.mp4"), *flags]
    result = CliRunner().invoke(cli.app, argv)
    assert isinstance(result.exception, ValueError), result.output
    assert str(refused.value) == str(result.exception)
    assert not (tmp_path / "o.mp4").exists()


def test_every_tabs_command_line_parses_into_the_same_request(tiny_model_dir, tmp_path):
    import typer.main

    group = typer.main.get_command(cli.app)
    uploads = tmp_path / "up"
    a, b = _clip(uploads / "a.mp4"), _clip(uploads / "b.mp4", seed=1)
    over = dict(
        steps=3, guidance=4.5, seed=7, sampler="heun", guidance_interval="0.2,0.8", fps=12.0, expand=False,
        width=48, height=32, direction="backward", overlap=4, blend=False, fade=2, strength=0.3, window=17,
        frames=9, image={"path": str(a)}, video={"path": str(a)}, video_a=str(a), video_b=str(b),
        negative_prompt="blurry",  # on the page (and checked here) once the pipeline takes one
    )  # fmt: skip
    for name in COMMANDS:
        r = serve.parse_request(name, _values("m", **over), {"m": tiny_model_dir}, uploads)
        argv = r.argv("out.png" if name == "image" else "out.mp4")
        assert argv[:2] == ["tessera", name]
        p = group.commands[name].make_context(name, argv[2:]).params
        assert (p["steps"], p["guidance"], p["seed"], p["sampler"]) == (3, 4.5, 7, "heun"), name
        assert p["guidance_interval"] == "0.2,0.8" and p["expand"] is False and p["model"] == r.model
        if name != "image":
            assert p["fps"] == 12.0
        if serve.NEGATIVE:
            assert p["negative_prompt"] == "blurry"
        if name in ("generate", "image", "loop", "long"):
            assert p["size"] == "48x32" and p["width"] is None and p["height"] is None
        if name == "generate":
            assert p["frames"] == 9
        files = {
            "animate": [p.get("image_path")], "extend": [p.get("video_path")], "edit": [p.get("video_path")],
            "connect": [p.get("video_a"), p.get("video_b")], "loop": [p.get("video")],
        }.get(name, [])  # fmt: skip
        assert files == [Path(f) for f in r.inputs], name
        if name == "extend":
            assert (p["forward"], p["overlap"], p["blend"], p["frames"]) == (False, 4, False, 9)
        if name == "edit":
            assert p["strength"] == 0.3
        if name == "long":
            assert (p["window"], p["frames"], p["blend"]) == (17, 9, False)
        if name == "loop":
            assert p["fade"] == 2


def test_the_page_result_is_the_command_lines_byte_for_byte(tiny_model_dir, tmp_path):
    models = {str(tiny_model_dir): tiny_model_dir}
    uploads = tmp_path / "out" / serve.UPLOAD_DIR
    still = _clip(uploads / "still.png", frames=1)
    jobs, loaded = serve.Jobs(tmp_path / "out"), serve.Models("cpu")
    for name, over in (("generate", {}), ("animate", {"image": str(still)})):
        r = serve.parse_request(name, _values(str(tiny_model_dir), **over), models, uploads)
        n, path, kept = jobs.start(r)
        assert path.parent == tmp_path / "out" and all(k.parent == path.parent for k in kept)
        caption, _ = serve.expanded(r)
        reports = []
        result = serve.execute(
            loaded.get(r.model), r, caption, lambda i, n, seen=reports: seen.append((i, n))
        )
        jobs.write(path, result, r.fps)
        assert reports == [(1, 2), (2, 2)]
        argv = r.argv(str(tmp_path / f"cli-{name}.mp4"), kept)
        done = subprocess.run(
            [sys.executable, "-m", "tessera.cli", *argv[1:]], capture_output=True, text=True
        )
        assert done.returncode == 0, done.stderr
        assert f"expanded prompt: {caption}" in done.stderr
        assert path.read_bytes() == (tmp_path / f"cli-{name}.mp4").read_bytes(), name
        assert read_video(path).shape == (5, 32, 32, 3)


def test_uploads_are_checked_before_decoding(tmp_path):
    root = tmp_path / "up"
    good = _clip(root / "ok.mp4")
    assert serve.check_upload(good, "video", root) == good.resolve()
    fake = root / "fake.mp4"
    fake.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(64))
    with pytest.raises(serve.ServeError, match="fake.mp4: not a MP4 file"):
        serve.check_upload(fake, "video", root)
    (root / "notes.txt").write_text("hello")
    with pytest.raises(serve.ServeError, match="must be one of .mp4"):
        serve.check_upload(root / "notes.txt", "video", root)
    with pytest.raises(serve.ServeError, match="over this server's 0 MiB limit"):
        serve.check_upload(good, "video", root, max_bytes=100)
    outside = _clip(tmp_path / "elsewhere.mp4")
    (root / "link.mp4").symlink_to(outside)
    for path in (outside, root / "link.mp4", root / ".." / "elsewhere.mp4"):
        with pytest.raises(serve.ServeError, match="read only from this server's uploads"):
            serve.check_upload(path, "video", root)
    truncated = root / "cut.mp4"
    truncated.write_bytes(good.read_bytes()[:48])
    with pytest.raises(serve.ServeError, match="cut.mp4: "):
        serve.check_upload(truncated, "video", root)


def test_the_picker_lists_model_folders_and_refuses_a_missing_one(tiny_model_dir, tmp_path):
    shutil.copytree(tiny_model_dir, tmp_path / "zoo" / "a")
    (tmp_path / "zoo" / "notes").mkdir()
    found = serve.model_choices([tmp_path / "zoo", tiny_model_dir])
    assert found[str(tmp_path / "zoo" / "a")] == tmp_path / "zoo" / "a"
    assert found[str(tiny_model_dir.resolve())] == tiny_model_dir.resolve()
    assert str(tmp_path / "zoo" / "notes") not in found
    with pytest.raises(ValueError, match="no such model folder"):
        serve.model_choices([tmp_path / "missing"])


# ---- the server, in a real browser -------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tiny_model_dir, tmp_path_factory):
    """`tessera serve` on loopback with the tiny model: (url, output folder, working folder)."""
    pytest.importorskip("gradio", reason="the ui extra is not installed: pip install -e '.[ui]'")
    httpx = pytest.importorskip("httpx")
    base = tmp_path_factory.mktemp("serve")
    out, cwd, port = base / "out", base / "cwd", _free_port()
    cwd.mkdir()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "GRADIO_ANALYTICS_ENABLED": "False"}
    argv = [
        "serve",
        "--model",
        str(tiny_model_dir),
        "--out",
        str(out),
        "--port",
        str(port),
        "--device",
        "cpu",
    ]
    log = open(base / "server.log", "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "tessera.cli", *argv], cwd=cwd, env=env, stdout=log, stderr=log
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                if httpx.get(url + "/config", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"tessera serve did not start: {(base / 'server.log').read_text()[-2000:]}")
            time.sleep(0.3)
        yield url, out, cwd
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()
    assert not any(cwd.iterdir()), "the server wrote outside its output folder"


@pytest.fixture(scope="module")
def browser():
    """Headless Chromium from the system, driven by Playwright's bundled driver."""
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        pytest.skip("no Chromium on this machine (apt-get install chromium); the browser tests need one")
    with sync_api.sync_playwright() as p:
        try:
            b = p.chromium.launch(executable_path=exe, headless=True, args=CHROMIUM_FLAGS)
        except Exception as e:  # a Chromium that cannot start here: say why, do not fail the suite
            pytest.skip(f"Chromium at {exe} does not start: {str(e).splitlines()[0]}")
        yield b
        b.close()


def _results(out: Path) -> list[str]:
    return sorted(p.name for p in out.iterdir() if p.name[:4].isdigit())


def _page(browser, url: str):
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.goto(url)
    return page


def _fill(page, tab: str, **fields) -> None:
    for name, value in fields.items():
        box = page.locator(f"#{tab}-{name} textarea, #{tab}-{name} input").first
        box.fill(str(value))


def test_page_generates_a_video_of_the_requested_length(server, browser):
    url, out, _ = server
    before = _results(out)
    page = _page(browser, url)
    _fill(page, "generate", prompt="a red ball bouncing", frames=9, width=32, height=32)
    page.locator("#tab-generate").get_by_text("Sampling").click()
    _fill(page, "generate", steps=2, seed=3)
    page.locator("#generate-go").click()
    duration = page.wait_for_function(
        "() => { const v = document.querySelector('#generate-result video'); "
        "return v && v.readyState >= 1 && v.duration > 0 ? v.duration : null }",
        timeout=60_000,
    ).json_value()
    assert duration == pytest.approx(9 / DEFAULTS.fps, abs=0.5 / DEFAULTS.fps)
    caption = page.locator("#generate-caption textarea").input_value()
    assert caption == serve.expanded(serve.Request("generate", "a red ball bouncing", None, seed=3))[0]
    new = sorted(set(_results(out)) - set(before))
    assert len(new) == 1 and new[0].endswith("-generate.mp4")
    command = page.locator("#generate-command").inner_text()
    assert f"tessera generate 'a red ball bouncing' -o {new[0]}" in command and "--frames 9" in command
    assert "--steps 2" in command and "--seed 3" in command
    assert read_video(out / new[0]).shape == (9, 32, 32, 3)
    link = page.locator("#generate-download a").first.get_attribute("href")
    assert link and link.endswith(".mp4")
    page.close()


def test_page_shows_why_a_request_is_refused(server, browser):
    url, out, _ = server
    before = _results(out)
    page = _page(browser, url)
    _fill(page, "generate", prompt="a red ball bouncing", frames=10, width=32, height=32)
    page.locator("#generate-go").click()
    page.get_by_text("--frames must be 1 + 4k (1, 5, 9, ..., 33, ...); got 10, try 9 or 13").wait_for()
    # An upload that is not what its name says is refused on the page, before any decoding.
    page.get_by_role("tab", name="Image to video").click()
    page.locator("#tab-animate input[type=file]").first.set_input_files(
        files=[{"name": "still.png", "mimeType": "image/png", "buffer": b"not a picture at all"}]
    )
    page.locator("#animate-prompt textarea").fill("a ball")
    page.locator("#animate-go").click()
    page.get_by_text("still.png: not a PNG file").wait_for()
    assert _results(out) == before
    page.close()


def test_eight_requests_at_once_all_finish_in_queue_order(server, tiny_model_dir):
    """The queue, over Gradio's own protocol on one session (one ordered stream of its messages): eight
    jobs joined at once all complete, one at a time (the server's --concurrency 1), in queue order,
    each reporting its sampler steps and writing its result under the output folder."""
    import httpx

    url, out, _ = server
    config = httpx.get(url + "/config").json()
    fn = next(d["id"] for d in config["dependencies"] if d.get("api_name") == "generate")
    ids = {c["id"]: c["props"].get("elem_id") or "" for c in config["components"]}
    names = [ids[i].removeprefix("generate-") for i in config["dependencies"][fn]["inputs"]]
    values = _values(str(tiny_model_dir.resolve()), frames=9, steps=4)
    session, t0, ready = "load-test", time.monotonic(), threading.Barrier(8)

    def join(seed: int) -> str:
        data = [{**values, "seed": seed}[k] for k in names]
        body = {"data": data, "fn_index": fn, "session_hash": session, "event_data": None, "trigger_id": None}
        ready.wait()
        joined = httpx.post(url + "/gradio_api/queue/join", json=body, timeout=30)
        assert joined.status_code == 200, joined.text
        return joined.json()["event_id"]

    with ThreadPoolExecutor(8) as pool:
        events = set(pool.map(join, range(8)))
    seen, done = [], {}
    with httpx.stream("GET", url + f"/gradio_api/queue/data?session_hash={session}", timeout=60) as stream:
        for line in stream.iter_lines():
            if line.startswith("data:"):
                m = json.loads(line[5:])
                seen.append(m)
                if m["msg"] == "process_completed":
                    done[m["event_id"]] = m
                if len(done) == len(events) or time.monotonic() - t0 > 120:
                    break
    queued = list(dict.fromkeys(m["event_id"] for m in seen if "event_id" in m))  # the order they joined
    assert len(events) == 8 and set(queued) == events and list(done) == queued, "none lost, queue order"
    assert all(m["success"] for m in done.values()), [m["output"] for m in done.values()]
    first_done = next(i for i, m in enumerate(seen) if m["msg"] == "process_completed")
    assert set(queued) == {m["event_id"] for m in seen[:first_done] if "event_id" in m}  # all waited at once
    running, steps = 0, []
    for m in seen:
        running += {"process_starts": 1, "process_completed": -1}.get(m["msg"], 0)
        assert running <= 1, "more jobs sampled at once than --concurrency allows"
        if m["msg"] == "progress":
            steps.append((m["event_id"], m["progress_data"][0]["index"]))
    # Each job's steps, in queue order (Gradio may merge updates that come faster than it sends them).
    assert list(dict.fromkeys(e for e, _ in steps)) == queued
    assert all(i in (1, 2, 3, 4) for _, i in steps) and steps == sorted(
        steps, key=lambda s: queued.index(s[0])
    )
    assert all([i for e2, i in steps if e2 == e] == sorted({i for e2, i in steps if e2 == e}) for e in queued)
    files = [Path(m["output"]["data"][2]["path"]) for m in done.values()]
    assert all(f.resolve().is_relative_to(out.resolve()) for f in files)
    numbers = [int(f.name[:4]) for f in files]  # job numbers, given as jobs start
    assert numbers == list(range(numbers[0], numbers[0] + 8))
    assert all(read_video(out / f.name).shape == (9, 32, 32, 3) for f in files)
    assert time.monotonic() - t0 < 120
