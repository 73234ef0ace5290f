-- The PostfixAdmin 3.x tables mailwarden's import reads, as public/upgrade.php of
-- postfixadmin/postfixadmin (commit 65b10f7, 2026) leaves them on MySQL/MariaDB:
-- the CREATE TABLEs of upgrade_1_mysql / _438 (alias_domain) with every later
-- _db_add_field and column change applied ({LATIN1}/{UTF-8}, {DATETIME} =
-- datetime NOT NULL default '2000-01-01 00:00:00', {DATE} = timestamp default
-- '2000-01-01', {DATEFUTURE} = timestamp default '2038-01-18', bigint quotas).

CREATE TABLE `domain` (
  `domain` varchar(255) CHARACTER SET latin1 COLLATE latin1_general_ci NOT NULL,
  `description` varchar(255) CHARACTER SET utf8 NOT NULL,
  `aliases` int(10) NOT NULL default '0',
  `mailboxes` int(10) NOT NULL default '0',
  `maxquota` bigint(20) NOT NULL default '0',
  `quota` bigint(20) NOT NULL default '0',
  `transport` varchar(255) CHARACTER SET latin1 COLLATE latin1_general_ci NOT NULL,
  `backupmx` tinyint(1) NOT NULL default '0',
  `created` datetime NOT NULL default '2000-01-01 00:00:00',
  `modified` datetime NOT NULL default '2000-01-01 00:00:00',
  `active` tinyint(1) NOT NULL default '1',
  `password_expiry` int DEFAULT 0,
  PRIMARY KEY (`domain`)
) DEFAULT CHARSET=latin1 COMMENT='Postfix Admin - Virtual Domains';

CREATE TABLE `mailbox` (
  `username` varchar(255) CHARACTER SET latin1 COLLATE latin1_general_ci NOT NULL,
  `password` varchar(255) CHARACTER SET latin1 COLLATE latin1_general_ci NOT NULL,
  `name` varchar(255) CHARACTER SET utf8 NOT NULL,
  `maildir` varchar(255) CHARACTER SET latin1 COLLATE latin1_general_ci NOT NULL,
  `quota` bigint(20) NOT NULL default '0',
  `local_part` varchar(255) CHARACTER SET latin1 COLLATE latin1_general_ci NOT NULL,
  `domain` varchar(255) CHARACTER SET latin1 COLLATE latin1_general_ci NOT NULL,
  `created` datetime NOT NULL default '2000-01-01 00:00:00',
  `modified` datetime NOT NULL default '2000-01-01 00:00:00',
  `active` tinyint(1) NOT NULL default '1',
  `phone` varchar(30) CHARACTER SET utf8 NOT NULL DEFAULT '',
  `email_other` varchar(255) CHARACTER SET utf8 NOT NULL DEFAULT '',
  `token` varchar(255) CHARACTER SET utf8 NOT NULL DEFAULT '',
  `token_validity` datetime NOT NULL default '2000-01-01 00:00:00',
  `password_expiry` datetime NOT NULL default '2000-01-01 00:00:00',
  `totp_secret` varchar(255) CHARACTER SET utf8 DEFAULT NULL,
  `smtp_active` tinyint(1) NOT NULL DEFAULT '1',
  PRIMARY KEY (`username`),
  KEY `domain` (`domain`)
) DEFAULT CHARSET=latin1 COMMENT='Postfix Admin - Virtual Mailboxes';

CREATE TABLE `alias` (
  `address` varchar(255) CHARACTER SET latin1 COLLATE latin1_general_ci NOT NULL,
  `goto` text CHARACTER SET latin1 COLLATE latin1_general_ci NOT NULL,
  `domain` varchar(255) CHARACTER SET latin1 COLLATE latin1_general_ci NOT NULL,
  `description` varchar(255) CHARACTER SET utf8 NOT NULL DEFAULT '',
  `created` datetime NOT NULL default '2000-01-01 00:00:00',
  `modified` datetime NOT NULL default '2000-01-01 00:00:00',
  `active` tinyint(1) NOT NULL default '1',
  PRIMARY KEY (`address`),
  KEY `domain` (`domain`)
) DEFAULT CHARSET=latin1 COMMENT='Postfix Admin - Virtual Aliases';

CREATE TABLE `alias_domain` (
  `alias_domain` varchar(255) CHARACTER SET latin1 COLLATE latin1_general_ci NOT NULL default '',
  `target_domain` varchar(255) CHARACTER SET latin1 COLLATE latin1_general_ci NOT NULL default '',
  `description` varchar(255) CHARACTER SET utf8 NOT NULL DEFAULT '',
  `created` datetime NOT NULL default '2000-01-01 00:00:00',
  `modified` datetime NOT NULL default '2000-01-01 00:00:00',
  `active` tinyint(1) NOT NULL default '1',
  PRIMARY KEY (`alias_domain`),
  KEY `active` (`active`),
  KEY `target_domain` (`target_domain`)
) DEFAULT CHARSET=latin1 COMMENT='Postfix Admin - Domain Aliases';

CREATE TABLE `vacation` (
  `email` varchar(255) CHARACTER SET latin1 COLLATE latin1_general_ci NOT NULL,
  `subject` varchar(255) CHARACTER SET utf8 NOT NULL,
  `body` text CHARACTER SET utf8 NOT NULL,
  `activefrom` timestamp NOT NULL default '2000-01-01 00:00:00',
  `activeuntil` timestamp NOT NULL default '2038-01-18 00:00:00',
  `cache` text NOT NULL DEFAULT '',
  `domain` varchar(255) CHARACTER SET latin1 COLLATE latin1_general_ci NOT NULL,
  `interval_time` int(11) NOT NULL DEFAULT '0',
  `created` datetime NOT NULL default '2000-01-01 00:00:00',
  `modified` timestamp NOT NULL default CURRENT_TIMESTAMP,
  `active` tinyint(1) NOT NULL default '1',
  PRIMARY KEY (`email`),
  KEY `email` (`email`)
) DEFAULT CHARSET=latin1 COMMENT='Postfix Admin - Virtual Vacation';
