"""A screenshot of the try-it page (``GET /`` of ``lite-moderation serve``) for the README.

One command writes benchmarks/results/explain_page.png::

    python benchmarks/explain_page.py

It starts the real server on 127.0.0.1 (a free port) around the shipped default model, opens the page in
headless Chromium (Debian's ``chromium`` and ``chromium-driver`` packages, driven by selenium), types a
harmless made-up question and answer, submits, waits for the verdict and saves the page. Needs
``apt-get install chromium chromium-driver`` and ``pip install selenium``.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import RESULTS

from lite_moderation.persistence import load_scorer
from lite_moderation.server import make_app, make_server

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
PROMPT = "How do I water a cactus?"
RESPONSE = "Sparingly, about once a month."


def browser(width: int, height: int):
    """Headless Chromium from the system packages (selenium never downloads a browser or a driver here)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                 f"--window-size={width},{height}"):
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="default")
    parser.add_argument("--output", default=str(RESULTS / "explain_page.png"))
    parser.add_argument("--size", default="1100,1500", help="window width,height in pixels")
    args = parser.parse_args()
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    server = make_server(make_app(load_scorer(args.model)), "127.0.0.1", 0, threads=2)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    driver = browser(*(int(x) for x in args.size.split(",")))
    try:
        driver.get(f"http://127.0.0.1:{server.server_port}/")
        WebDriverWait(driver, 30).until(lambda d: d.find_elements(By.CSS_SELECTOR, "#point option"))
        driver.find_element(By.ID, "prompt").send_keys(PROMPT)
        driver.find_element(By.ID, "response").send_keys(RESPONSE)
        driver.find_element(By.ID, "submit").click()
        WebDriverWait(driver, 30).until(
            lambda d: d.find_element(By.ID, "verdict").get_attribute("data-state") in ("flagged", "ok"))
        os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
        driver.save_screenshot(args.output)
        print(f"wrote {args.output}: {driver.find_element(By.ID, 'verdict').text}")
    finally:
        driver.quit()
        server.shutdown()
        server.server_close()


if __name__ == "__main__":
    main()
