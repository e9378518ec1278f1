"""The Lambda code asset as CDK builds it: local bundling runs infra/package.py (no Docker), under
a hash of the sources and the lock file (`package.asset_hash`).

CDK stages the bundle as `cdk.out/asset.<hash>` and builds it only when that directory is missing,
so a synth with nothing changed reuses it, and the template's S3 key (and `cdk diff`) changes only
when a source file, the lock file or the packager does."""

from __future__ import annotations

import sys
from pathlib import Path

import jsii
from aws_cdk import AssetHashType, BundlingOptions, DockerImage, ILocalBundling
from aws_cdk import aws_lambda as lambda_

from infra import package


@jsii.implements(ILocalBundling)
class LocalPackager:
    """Builds the asset into CDK's output directory with infra/package.py. Never falls back to Docker:
    a failed build fails the synthesis with pip's message."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def try_bundle(self, output_dir: str, options: BundlingOptions) -> bool:
        print(f"mlreg: building the Lambda asset ({package.PLATFORM}, locked wheels) into {output_dir}",
              file=sys.stderr)
        package.build(Path(output_dir), root=self.root)
        return True


def bundled_code(root: Path = package.ROOT) -> lambda_.Code:
    return lambda_.Code.from_asset(
        str(root / "infra" / "handlers"),  # unused by local bundling; CDK wants an existing path
        asset_hash=package.asset_hash(root),
        asset_hash_type=AssetHashType.CUSTOM,
        # The image is never pulled: LocalPackager always bundles (or fails).
        bundling=BundlingOptions(image=DockerImage.from_registry("mlreg-local-bundling-only"),
                                 local=LocalPackager(root)),
    )
