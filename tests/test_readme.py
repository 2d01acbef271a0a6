"""The README's Python examples run as written, and .ci/run runs README's test command."""
import os
import re

import matplotlib

matplotlib.use("Agg")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def readme_blocks():
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
        return re.findall(r"```python\n(.*?)```", f.read(), flags=re.S)


def test_first_example_and_latent_example_run_and_beat_fbp():
    blocks = readme_blocks()
    assert len(blocks) >= 2
    namespace = {}
    exec(compile(blocks[0], "README first example", "exec"), namespace)
    soft = namespace["fista"].solution
    exec(compile(blocks[1], "README latent example", "exec"), namespace)
    import numpy as np
    truth = namespace["x_true"].as_array()
    psnr = lambda x: 10 * np.log10(1 / np.mean((x.as_array() - truth) ** 2))  # noqa: E731
    assert psnr(soft) > psnr(namespace["x0"]) + 5
    assert psnr(namespace["x_range"]) > psnr(namespace["x0"]) + 5
    assert namespace["R"].latent.shape == (1, 32)


def test_ci_runs_the_readme_test_command():
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
        readme = f.read()
    command = re.search(r"## Tests.*?```bash\n(.*?)\n```", readme, flags=re.S).group(1).strip()
    with open(os.path.join(ROOT, ".ci", "run"), encoding="utf-8") as f:
        assert command in f.read()


def test_relative_links_in_readme_and_docs_exist():
    import glob
    pages = [os.path.join(ROOT, "README.md"), os.path.join(ROOT, "benchmarks", "README.md")]
    pages += glob.glob(os.path.join(ROOT, "docs", "*.md"))
    missing = []
    for page in pages:
        with open(page, encoding="utf-8") as f:
            text = f.read()
        for link in re.findall(r"\]\(([^)#\s]+)", text):
            if not link.startswith(("http://", "https://", "mailto:")) and not \
                    os.path.exists(os.path.join(os.path.dirname(page), link)):
                missing.append(f"{os.path.relpath(page, ROOT)} -> {link}")
    assert not missing, missing
