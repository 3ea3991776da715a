"""The local stack: moto in server mode (S3, SSM, Step Functions executing the real state machine), the
project's real handlers answering its Lambda invocations, an API Gateway front, and the Polyv emulator —
all created from ``template.yaml`` so that local and deployed cannot drift."""
