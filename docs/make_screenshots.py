"""Screenshots of the explore page for the README, taken by the browser the tests drive (Debian's
Chromium through Playwright):

    charrnn explore RUN --text FILE --out page.html
    python docs/make_screenshots.py page.html --hover 120 --signal line-pos

writes docs/explore.png (surprisal colours, the hover's top-5 guesses at character 120) and
docs/explore-unit.png (the text coloured by the unit ranked first for the signal).
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("page", type=Path, help="an HTML file written by charrnn explore")
    ap.add_argument("--hover", type=int, default=120, help="the character whose top-5 guesses are shown")
    ap.add_argument("--signal", default="line-pos", help="the signal whose first ranked unit colours the second shot")
    ap.add_argument("--out-dir", type=Path, default=Path(__file__).parent)
    args = ap.parse_args()
    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        raise SystemExit("Chromium is not installed (apt-get install chromium)")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1280, "height": 760})
        page.goto(args.page.resolve().as_uri())
        page.hover(f"#text span.ch[data-i='{args.hover}']")
        page.screenshot(path=str(args.out_dir / "explore.png"))
        page.select_option("#signal", args.signal)
        page.locator("#ranked li").first.click()
        page.mouse.move(0, 0)
        page.screenshot(path=str(args.out_dir / "explore-unit.png"))
        browser.close()
    print(f"wrote {args.out_dir / 'explore.png'} and {args.out_dir / 'explore-unit.png'}")


if __name__ == "__main__":
    main()
