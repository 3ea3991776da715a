"""What ``make deploy`` / ``make deploy-guided`` do around ``sam deploy``, with the project's own error lines.

``preflight NAME REGION``: the Polyv credentials parameter must exist and hold ``{"appId", "appSecret"}``
before anything is deployed (the functions would only fail later, at the first retrieval).
``outputs STACK REGION``: the API URL and a request to copy and paste, after a deploy.
"""

from __future__ import annotations

import os
import sys

import boto3

from polyv_retriever import errors
from polyv_retriever.cli.main import report
from polyv_retriever.polyv import credentials

CREATE_HINT = (
    "create it first: aws ssm put-parameter --region {region} --type SecureString --name {name} "
    """--value '{{"appId":"...","appSecret":"..."}}'"""
)


def preflight(name: str, region: str) -> int:
    os.environ["AWS_DEFAULT_REGION"] = region
    try:
        found = credentials.from_ssm(name)
    except errors.InvalidInput as exc:
        if "does not exist" in str(exc):
            exc.hint = CREATE_HINT.format(region=region, name=name)
        return report(exc, as_json=False)
    except Exception as exc:  # the CLI's one line and exit code for everything else
        return report(exc, as_json=False)
    print(f"SSM parameter {name} ({region}): Polyv appId {found.app_id}; the secret is not shown")
    return 0


def outputs(stack: str, region: str) -> int:
    try:
        described = boto3.client("cloudformation", region_name=region).describe_stacks(StackName=stack)
    except Exception as exc:
        return report(exc, as_json=False)
    values = {o["OutputKey"]: o["OutputValue"] for o in described["Stacks"][0].get("Outputs", [])}
    api = values.get("ApiUrl", "")
    print(f"API:     {api}  (IAM auth: requests are SigV4-signed with your AWS credentials)")
    print(f"Bucket:  {values.get('BucketName', '-')}")
    print("Start a retrieval and follow it with this project's CLI (SigV4 from your AWS credentials):")
    print(f"  polyv-retriever submit --stack-name {stack} --region {region} YOUR_VID --expire-days 3")
    print(f"  polyv-retriever get --stack-name {stack} --region {region} RETRIEVAL_ID --wait")
    print("or with awscurl (pip install awscurl):")
    print(
        f"  awscurl --service execute-api --region {region} -X POST -H 'Content-Type: application/json' "
        f"""-d '{{"vids": ["YOUR_VID"], "expireDays": 3}}' {api}/retrievals"""
    )
    print(f"  awscurl --service execute-api --region {region} {api}/retrievals/RETRIEVAL_ID")
    return 0


if __name__ == "__main__":
    command, *rest = sys.argv[1:]
    sys.exit({"preflight": preflight, "outputs": outputs}[command](*rest))
