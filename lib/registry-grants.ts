/**
 * The permissions every process that serves the registry needs (the Lambda function, and the upload
 * service's task), granted in one place so that the two cannot drift apart.
 */
import { Stack } from 'aws-cdk-lib';
import type { ITable } from 'aws-cdk-lib/aws-dynamodb';
import type { IEventBus } from 'aws-cdk-lib/aws-events';
import { Grant, type IGrantable, PolicyStatement } from 'aws-cdk-lib/aws-iam';
import { ViaServicePrincipal } from 'aws-cdk-lib/aws-kms';
import type { IBucket } from 'aws-cdk-lib/aws-s3';
import type { ISecret } from 'aws-cdk-lib/aws-secretsmanager';

/**
 * What the registry may do with its data, and nothing more: objects and multipart uploads in its
 * bucket (no bucket configuration, no versions, no ACLs), items in its table (no scans, no table
 * changes).
 */
export function grantRegistryData(grantee: IGrantable, bucket: IBucket, table: ITable): void {
  const principal = grantee.grantPrincipal;
  principal.addToPrincipalPolicy(
    new PolicyStatement({
      // ListBucket also makes a missing object a 404 rather than a 403.
      actions: ['s3:ListBucket', 's3:ListBucketMultipartUploads'],
      resources: [bucket.bucketArn],
    }),
  );
  principal.addToPrincipalPolicy(
    new PolicyStatement({
      actions: [
        's3:GetObject',
        's3:PutObject',
        's3:DeleteObject',
        's3:AbortMultipartUpload',
        's3:ListMultipartUploadParts',
      ],
      resources: [bucket.arnForObjects('*')],
    }),
  );
  principal.addToPrincipalPolicy(
    new PolicyStatement({
      actions: [
        'dynamodb:GetItem',
        'dynamodb:PutItem',
        'dynamodb:UpdateItem',
        'dynamodb:DeleteItem',
        'dynamodb:Query',
        'dynamodb:BatchWriteItem',
        'dynamodb:TransactWriteItems',
        'dynamodb:ConditionCheckItem',
      ],
      resources: [table.tableArn],
    }),
  );
}

/**
 * Lets garbage collection read every item of the table: it lists the upload sessions of every
 * repository, which only a Scan finds (they are kept under their repositories' keys).
 */
export function grantMetadataScan(grantee: IGrantable, table: ITable): void {
  grantee.grantPrincipal.addToPrincipalPolicy(
    new PolicyStatement({ actions: ['dynamodb:Scan'], resources: [table.tableArn] }),
  );
}

/**
 * Lets grantee read a secret's value, and nothing else: GetSecretValue on this secret (unlike
 * ISecret.grantRead, not DescribeSecret), and Decrypt through Secrets Manager with the key of a secret
 * encrypted with a customer-managed key.
 */
export function grantSecretValue(grantee: IGrantable, secret: ISecret): void {
  Grant.addToPrincipalOrResource({
    grantee,
    actions: ['secretsmanager:GetSecretValue'],
    // A secret known by its name or partial ARN: its full ARN ends in a hyphen and 6 characters.
    resourceArns: [secret.secretFullArn ?? `${secret.secretArn}-??????`],
    resource: secret,
  });
  secret.encryptionKey?.grantDecrypt(
    new ViaServicePrincipal(
      `secretsmanager.${Stack.of(secret).region}.amazonaws.com`,
      grantee.grantPrincipal,
    ),
  );
}

/**
 * Lets grantee put the registry's events on its bus (notifications.eventbridge), and on no other bus.
 * The bus has no key of its own: events are encrypted with an AWS-owned key, which needs no grant.
 */
export function grantEventPublishing(grantee: IGrantable, eventBus: IEventBus): void {
  grantee.grantPrincipal.addToPrincipalPolicy(
    new PolicyStatement({ actions: ['events:PutEvents'], resources: [eventBus.eventBusArn] }),
  );
}
