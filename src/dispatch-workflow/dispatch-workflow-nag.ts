import * as sfn from 'aws-cdk-lib/aws-stepfunctions';
import type { DispatchWorkflowProps } from './dispatch-workflow';
import { addNagSuppressions, addRolePolicyNagSuppressions, NagReasons, TABLE_INDEX_FINDING, wildcardSuppressions } from '../shared/nag';

/**
 * The cdk-nag AwsSolutions suppressions of the dispatch workflow, with their reasons (shipped as
 * resource metadata). Call it after the state machine's own grants.
 */
export function addDispatchWorkflowNagSuppressions(stateMachine: sfn.StateMachine, props: DispatchWorkflowProps): void {
  // Customer-managed keys of the queues and the table the workflow writes to.
  const kms = [props.requestQueue.encryptionMasterKey, props.deadLetterQueue.encryptionMasterKey, props.table.table.encryptionKey]
    .some((key) => key !== undefined);
  addNagSuppressions(stateMachine, [
    {
      id: 'AwsSolutions-SF1',
      reason: 'The dispatch workflow logs at level ERROR without execution data on purpose: its execution data holds the vendor credential, which must never reach CloudWatch Logs.',
    },
    {
      id: 'AwsSolutions-SF2',
      reason: 'X-Ray tracing of the dispatch workflow is opt-in (the tracing / tracingEnabled prop), because traces cost money per request and most users of the construct do not read them.',
    },
  ]);
  addRolePolicyNagSuppressions(stateMachine.role, [
    {
      id: 'AwsSolutions-IAM5',
      reason: 'Step Functions log delivery (logs:CreateLogDelivery, GetLogDelivery, UpdateLogDelivery, DeleteLogDelivery, ListLogDeliveries, PutResourcePolicy, DescribeResourcePolicies, DescribeLogGroups) supports no resource-level permissions, so AWS requires Resource *; so does X-Ray when tracing is on.',
      appliesTo: ['Resource::*'],
    },
    {
      id: 'AwsSolutions-IAM5',
      reason: 'The dispatch workflow may call every method and path of the throttled proxy\'s stage (the proxy forwards <vendorUrl>/{proxy+}); the ARN is limited to that one API and stage, whose resource policy denies every other role.',
      appliesTo: [{ regex: '/^Resource::arn:<AWS::Partition>:execute-api:(<AWS::Region>|[a-z0-9-]+):(<AWS::AccountId>|[0-9]+):<[A-Za-z0-9]+>\\/[^/*]+\\/(\\*|POST)\\/\\*$/' }],
    },
    ...(props.proxy.credentialFunction || props.pacing ? [{
      id: 'AwsSolutions-IAM5',
      reason: 'LambdaInvoke grants invoking the proxy\'s credential function (OAuth token, JSON secret) or the vendor caller and their versions and aliases (<function ARN>:*); the wildcard never leaves those functions.',
      appliesTo: [{ regex: '/^Resource::<[A-Za-z0-9]+\\.Arn>:\\*$/' }],
    }] : []),
    { id: 'AwsSolutions-IAM5', reason: NagReasons.TABLE_INDEX, appliesTo: [TABLE_INDEX_FINDING] },
    ...wildcardSuppressions({ kms }),
  ]);
}
