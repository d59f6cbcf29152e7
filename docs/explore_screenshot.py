"""The screenshot in docs/explore.md: `vaetool explore` on a trained MNIST model, in headless chromium.

Serves the model as the command does, draws a digit on the canvas, makes the default
interpolation and loads the latent map, then saves the page. Needs the explore and test extras
(Selenium) and Debian's chromium and chromium-driver.

    python docs/explore_screenshot.py -m runs/conv-mnist -o docs/images/explore.png
"""
from __future__ import annotations

import argparse

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-m", "--model", default="runs/conv-mnist")
    parser.add_argument("-o", "--output", default="docs/images/explore.png")
    args = parser.parse_args()

    import torch
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    import vaetool
    from vaetool import io
    from vaetool.explore import server
    from vaetool.explore.app import create_app
    from vaetool.explore.explorer import Explorer

    torch.set_num_threads(1)
    app = create_app(Explorer(vaetool.load(args.model), io.model_path(args.model)))
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1400,1420", "--hide-scrollbars"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    wait = WebDriverWait(driver, 120)
    try:
        with server.running(app) as url:
            driver.get(url)
            wait.until(lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-ready") == "true")
            wait.until(lambda d: "PCA" in d.find_element(By.ID, "map-status").text)
            # A hand-drawn 7: the top bar, then the stem.
            canvas = driver.find_element(By.ID, "draw")
            ActionChains(driver).move_to_element_with_offset(canvas, -55, -60).click_and_hold() \
                .move_by_offset(50, 0).move_by_offset(55, 0).move_by_offset(-25, 50).move_by_offset(-25, 50) \
                .move_by_offset(-15, 40).release().perform()
            wait.until(lambda d: "your drawing" in d.find_element(By.ID, "message").text)
            driver.find_element(By.ID, "interpolate").click()
            wait.until(lambda d: d.find_element(By.ID, "gif").is_displayed())
            driver.save_screenshot(args.output)
    finally:
        driver.quit()
    print(f"Wrote {args.output}")


if __name__ == "__main__":
    main()
