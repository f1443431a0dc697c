//! EC2, CloudFormation and Auto Scaling adapter for berth: IMDSv2 identity, ENI and EBS attachment by tag, signals
